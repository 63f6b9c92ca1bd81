"""gunicorn's gthread worker, taking a new connection only while it has a free thread.

gunicorn's gthread worker accepts until it holds `worker_connections` connections,
idle kept-alive ones included, whether or not a thread is free to serve them. Both
settings of that one number fail under several workers while nginx keeps its
upstream connections alive (make bench; the README's Performance section):

- low (2 x threads): nginx's kept-alive connections fill every worker, and a new
  one waits in the listen backlog until some connection closes, which under load
  none does;
- high (gunicorn's 1000): whichever worker wakes first takes every connection a
  burst opens and queues its requests behind its own threads while the other
  workers idle, and as nginx goes on reusing those connections, the load never
  spreads.

gunicorn has no setting for "accept only with a free thread", so this subclass
adds it over gunicorn 27's own hooks: a worker whose threads are all busy stops
listening, and a new connection goes to a worker that can serve it now. Idle
kept-alive connections cost nothing but `worker_connections`, which is therefore
high. A request arriving on a connection the worker already holds still queues
there, as in gunicorn's worker: so nginx keeps no upstream connection alive
(stack.conf.template), and every request is a new connection.
"""

from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker


class FreeThreadWorker(ThreadWorker):
    """gthread that listens for new connections only while a thread is free."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Requests handed to the thread pool and not finished yet. Only the main
        # loop changes it: both hooks below run there (finish_request is deferred
        # to it through gunicorn's method queue).
        self.in_flight = 0

    def set_accept_enabled(self, enabled: bool | None) -> None:
        # gunicorn's run loop calls this whenever its own connection limit says
        # "accept" and the listener is off, so a freed thread turns it back on.
        super().set_accept_enabled(enabled and self.in_flight < self.cfg.threads)

    def enqueue_req(self, conn: TConn) -> None:
        self.in_flight += 1
        super().enqueue_req(conn)
        if self.in_flight >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: TConn, fs: Future[bool]) -> None:
        self.in_flight -= 1
        super().finish_request(conn, fs)

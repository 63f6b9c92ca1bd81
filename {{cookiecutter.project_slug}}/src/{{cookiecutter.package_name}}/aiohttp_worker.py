"""aiohttp's gunicorn worker, keeping gunicorn's listen backlog.

aiohttp 3.14's `GunicornWebWorker` serves gunicorn's listening socket through a
`web.SockSite` it builds without a `backlog`, so the socket is listened on again
with `SockSite`'s default of 128, in place of gunicorn's `backlog` (2048), by
every worker that starts. The socket is shared by all workers: past 128 pending
connections, nginx's connect fails (EAGAIN on a unix socket) and the client gets
502, where the other worker classes queue 2048. aiohttp's worker has no setting
for it, so this subclass listens again with gunicorn's value once its sites are
up: the first heartbeat comes after them.
"""

from __future__ import annotations

from aiohttp.worker import GunicornWebWorker


class BacklogWebWorker(GunicornWebWorker):
    """GunicornWebWorker whose sockets keep gunicorn's `backlog`."""

    _listening_again = False

    def notify(self) -> None:
        super().notify()
        if self.booted and not self._listening_again:
            # listen() on a listening socket only sets its backlog.
            for sock in self.sockets:
                sock.listen(self.cfg.backlog)
            self._listening_again = True

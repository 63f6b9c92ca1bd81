"""The example endpoints of the HTTP contract: one multi-worker pitfall each, solved.

Everything here exists only for the examples (their routes, their part of the
API's description, the child task script, the export filler); a project
generated without them keeps the toolkit in the package above and nothing of
this directory.
"""

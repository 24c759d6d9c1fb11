"""Command-line tools around the server: ``explain`` (``clusterdns resolve``: a name's
search walk, asked of a server with dnspython or answered in-process) and ``servicelinks``
(``clusterdns env``: the service variables the kubelet gives a pod).

May import: anything in the package but ``testing``; dnspython.
"""

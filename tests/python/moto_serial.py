"""moto's S3 server answering one request at a time, so that its check of a conditional
PUT (If-None-Match: *) and the write that follows are atomic, as on S3 itself. moto's
own `moto_server` runs threaded. `--no-conditional-put` drops the If-None-Match header
of every request, so a create-only PUT overwrites: the control run of the commit-race
test, which must then lose commits.

  python moto_serial.py PORT [--no-conditional-put]
"""

import sys

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def without_conditional_put(app):
    def wrapped(environ, start_response):
        environ.pop("HTTP_IF_NONE_MATCH", None)
        return app(environ, start_response)

    return wrapped


def main():
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    if "--no-conditional-put" in sys.argv[2:]:
        app = without_conditional_put(app)
    run_simple("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

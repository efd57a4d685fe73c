"""``tandem-serve``: start the HTTP service on a bundle.

Examples::

    tandem-serve --bundle runs/<date>/<time>-synthetic-sasrec/bundle
    tandem-serve --bundle path/to/bundle port=8001 sessions.kind=redis sessions.redis_url=redis://127.0.0.1:6379/0
    TANDEM_ADMIN_TOKEN=secret tandem-serve --bundle path/to/bundle --config my-serving.yaml

Settings come from ``--config`` (default ``conf/serving/default.yaml``) and ``key=value``
overrides; a bad setting or a bundle that fails to load exits 2 with a message naming it.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ranking.errors import ConfigError, DataError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem-serve", description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", required=True, help="bundle directory (serving.bundle)")
    parser.add_argument("--config", default=None, help="service settings (YAML)")
    parser.add_argument("overrides", nargs="*", help="key=value settings, e.g. port=8001")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import uvicorn

    from serving.app import create_app
    from serving.config import load_service_config
    from serving.state import Service

    try:
        config = load_service_config(args.config, args.overrides)
        service = Service(args.bundle, config)
    except (ConfigError, DataError) as exc:
        print(f"tandem-serve: {exc}", file=sys.stderr)
        return 2
    print(
        f"tandem-serve: bundle {service.slot.current.version} on http://{config.host}:{config.port}",
        flush=True,
    )
    try:
        uvicorn.run(create_app(service), host=config.host, port=config.port, log_level="warning")
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

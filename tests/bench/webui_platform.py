"""A throwaway platform for the webui benchmarks: redis-server, the embedded store, `wap web` and
`wap worker` processes on free 127.0.0.1 ports, all stopped on exit."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.webui.helpers import PLAYBOOKS, Api, Proc, env_for, free_port, wait_for
from webui.config import Settings, load_settings
from webui.embedded import _redis_ready, _store_ready, redis_server_binary


@contextlib.contextmanager
def platform(workers: int = 1, playbooks: Path = PLAYBOOKS) -> Iterator[tuple[Settings, Api, Path]]:
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="wap-bench-") as tmp:
        root = Path(tmp)
        try:
            redis_port, store_port = free_port(), free_port()
            procs.append(Proc(
                [str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(redis_port),
                 "--dir", tmp, "--save", "", "--appendonly", "no"],
                root / "redis.log",
            ))  # fmt: skip
            (root / "store").mkdir()
            procs.append(Proc(
                [sys.executable, "-m", "webui.store.embedded_server", "--host", "127.0.0.1",
                 "--port", str(store_port), "--data-dir", str(root / "store"),
                 "--log-file", str(root / "store.log"), "--pid-file", str(root / "store.pid")],
                root / "store.out",
            ))  # fmt: skip
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            store_uri = f"mongodb://127.0.0.1:{store_port}/wap"
            wait_for(_redis_ready(redis_url), what="redis")
            wait_for(_store_ready(store_uri), what="store")
            settings = load_settings({
                "WAP_DATA_DIR": str(root / "data"), "WAP_BIND": f"127.0.0.1:{free_port()}",
                "WAP_MONGODB_URI": store_uri, "WAP_REDIS_URL": redis_url,
                # job dirs where production puts them (RAM, /dev/shm): ansible-runner writes and
                # reads a file per event there, and the bench's runner-alone run uses RAM too
                "WAP_PLAYBOOKS_DIR": str(playbooks),
            })  # fmt: skip
            env = env_for(settings)
            procs.append(Proc([sys.executable, "-m", "wap.cli", "web"], root / "web.log", env))
            for number in range(workers):
                procs.append(
                    Proc([sys.executable, "-m", "wap.cli", "worker"], root / f"w{number}.log", env)
                )
            api = Api(f"http://{settings.bind}")

            def web_up() -> bool:
                try:
                    return api.http.get(api.base + "/healthz", timeout=1).ok
                except OSError:
                    return False

            wait_for(web_up, timeout=30, what="wap web")
            assert api.setup().ok
            api.use_token()
            yield settings, api, root
        finally:
            for proc in reversed(procs):
                proc.stop()

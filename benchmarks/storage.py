"""Reading from an S3 server: normstat against the plain ways of reading the same objects.

A moto S3 server (``moto[server]``) runs in its own process on 127.0.0.1, so the server's CPU
is not the reader's. Each measurement runs in a fresh process (its peak RSS is its own), the
contenders interleaved, the median of ``--repeats`` rounds reported:

1. Parquet: ``normstat.fit("s3://...")`` against ``pyarrow.parquet.read_table`` of the same
   object through ``pyarrow.fs.S3FileSystem`` (every column, into memory), and against
   ``normstat.fit`` of the same file on local disk (peak RSS).
2. HDF5: a contiguous dataset (read by ranged GETs of its rows), a chunked one and a chunked
   one compressed with shuffle + gzip (stored chunks fetched by coalesced ranged GETs and
   decoded by normstat; ``--blocks`` sets the block size of the fsspec cache h5py reads through
   where it reads the values itself) against a plain sequential download of the object (16 MiB
   reads, discarded); the compressed one also against a fit of the same file on local disk.

    python benchmarks/storage.py --mb 1024      # a 1 GiB Parquet object, a 256 MiB HDF5
    python benchmarks/storage.py --mb 64        # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BUCKET = "bench"
COLS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the moto server did not start")


def make_parquet(path: str, mb: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = mb * 2**20 // (COLS * 4)
    group = 2**20 // COLS * 4  # row groups of ~16 MiB
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(COLS)]
    with pq.ParquetWriter(path, pa.schema([(n, pa.float32()) for n in names])) as w:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            x = rng.standard_normal((n, COLS), dtype=np.float32)
            w.write_table(pa.table({nm: x[:, j] for j, nm in enumerate(names)}))


def make_hdf5(path: str, mb: int, chunked: bool, gzip: bool = False) -> None:
    import h5py

    rows = mb * 2**20 // (COLS * 4)
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        chunks = (2**14, COLS) if chunked else None  # 1 MiB chunks
        filters = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if gzip else {}
        ds = f.create_dataset("x", (rows, COLS), np.float32, chunks=chunks, **filters)
        step = 2**20
        for start in range(0, rows, step):
            n = min(step, rows - start)
            ds[start : start + n] = rng.standard_normal((n, COLS), dtype=np.float32)


PROGRAMS = {
    "read_table": """
import os, pyarrow.parquet as pq
from pyarrow import fs
s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"].split("://")[1],
                     scheme="http", region="us-east-1", connect_timeout=5, request_timeout=60)
t = pq.read_table("{key}", filesystem=s3)
assert t.num_rows > 0
""",
    "fit": """
import normstat, normstat.storage as st
st.BLOCK_SIZE = {block}
st.CACHE_TYPE = "{cache}"
s = normstat.fit("{uri}")
assert s.count.min() > 0
""",
    "download": """
import os
from pyarrow import fs
s3 = fs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"].split("://")[1],
                     scheme="http", region="us-east-1", connect_timeout=5, request_timeout=60)
with s3.open_input_stream("{key}") as f:
    while f.read(16 * 2**20):
        pass
""",
}


def timed(program: str, env: dict[str, str]) -> tuple[float, float]:
    wrapper = (
        "import time, resource\n"
        # start-up is not what is measured: every contender's libraries are loaded first
        "import h5py, pyarrow.parquet, pyarrow.fs, s3fs, normstat, normstat.api.fitting\n"
        "t0 = time.perf_counter()\n"
        f"exec({program!r})\n"
        "print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"a contender failed:\n{out.stderr[-3000:]}")
    seconds, rss = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(rss) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="Parquet object size (MiB)")
    ap.add_argument("--hdf5-mb", type=int, default=256, help="HDF5 object size (MiB)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blocks", default="2,8,32", help="fsspec block sizes to try (MiB)")
    ap.add_argument("--caches", default="background,blockcache", help="fsspec cache types")
    args = ap.parse_args()
    server, url = start_server()
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=url)
        client.create_bucket(Bucket=BUCKET)
        with tempfile.TemporaryDirectory() as tmp:
            files = {
                "t.parquet": lambda p: make_parquet(p, args.mb),
                "contiguous.h5": lambda p: make_hdf5(p, args.hdf5_mb, False),
                "chunked.h5": lambda p: make_hdf5(p, args.hdf5_mb, True),
                "gzip.h5": lambda p: make_hdf5(p, args.hdf5_mb, True, gzip=True),
            }
            sizes = {}
            for name, make in files.items():
                path = os.path.join(tmp, name)
                make(path)
                sizes[name] = os.path.getsize(path)
                client.upload_file(path, BUCKET, name)
            results = run_all(args, env, tmp, sizes)
    finally:
        server.terminate()
        server.wait()
    print(json.dumps(results, indent=2))


def run_all(args: argparse.Namespace, env: dict[str, str], tmp: str, sizes: dict[str, int]) -> dict:
    default_block = 8 * 2**20
    contenders = {
        "parquet read_table": PROGRAMS["read_table"].format(key=f"{BUCKET}/t.parquet"),
        "parquet fit s3": PROGRAMS["fit"].format(
            uri=f"s3://{BUCKET}/t.parquet", block=default_block, cache="background"
        ),
        "parquet fit local": PROGRAMS["fit"].format(
            uri=os.path.join(tmp, "t.parquet"), block=default_block, cache="background"
        ),
        "hdf5 download contiguous": PROGRAMS["download"].format(key=f"{BUCKET}/contiguous.h5"),
        "hdf5 fit contiguous": PROGRAMS["fit"].format(
            uri=f"s3://{BUCKET}/contiguous.h5", block=default_block, cache="background"
        ),
        "hdf5 download chunked": PROGRAMS["download"].format(key=f"{BUCKET}/chunked.h5"),
        "hdf5 download gzip": PROGRAMS["download"].format(key=f"{BUCKET}/gzip.h5"),
        "hdf5 fit gzip": PROGRAMS["fit"].format(
            uri=f"s3://{BUCKET}/gzip.h5", block=default_block, cache="background"
        ),
        "hdf5 fit gzip local": PROGRAMS["fit"].format(
            uri=os.path.join(tmp, "gzip.h5"), block=default_block, cache="background"
        ),
    }
    for mb in (int(b) for b in args.blocks.split(",")):
        for cache in args.caches.split(","):
            contenders[f"hdf5 fit chunked block {mb} MiB {cache}"] = PROGRAMS["fit"].format(
                uri=f"s3://{BUCKET}/chunked.h5", block=mb * 2**20, cache=cache
            )
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, program in contenders.items():  # interleaved: load drifts hit all alike
            runs[name].append(timed(program, env))
    out: dict = {"sizes_bytes": sizes, "repeats": args.repeats, "results": {}}
    for name, values in runs.items():
        seconds = statistics.median(v[0] for v in values)
        size = sizes[
            "t.parquet"
            if name.startswith("parquet")
            else next(f for f in ("contiguous.h5", "gzip.h5", "chunked.h5") if f[:-3] in name)
        ]
        out["results"][name] = {
            "seconds": round(seconds, 3),
            "MiB_per_s": round(size / 2**20 / seconds, 1),
            "peak_rss_MiB": round(max(v[1] for v in values), 1),
        }
    r = out["results"]
    out["ratios"] = {
        "parquet fit s3 / read_table throughput": round(
            r["parquet read_table"]["seconds"] / r["parquet fit s3"]["seconds"], 3
        ),
        "hdf5 contiguous fit / download": round(
            r["hdf5 download contiguous"]["seconds"] / r["hdf5 fit contiguous"]["seconds"], 3
        ),
    }
    out["ratios"]["hdf5 gzip fit / download"] = round(
        r["hdf5 download gzip"]["seconds"] / r["hdf5 fit gzip"]["seconds"], 3
    )
    out["ratios"]["hdf5 gzip fit / local fit"] = round(
        r["hdf5 fit gzip local"]["seconds"] / r["hdf5 fit gzip"]["seconds"], 3
    )
    for name in r:
        if name.startswith("hdf5 fit chunked"):
            out["ratios"][f"{name} / download"] = round(
                r["hdf5 download chunked"]["seconds"] / r[name]["seconds"], 3
            )
    return out


if __name__ == "__main__":
    main()

"""Copy a file to stdout slowly (4 MiB every 0.15 s): a stand-in for data arriving over a
network, used to capture the progress-bar screenshot (docs/images/progress.png)."""

import sys
import time

with open(sys.argv[1], "rb") as f:
    while block := f.read(4 << 20):
        sys.stdout.buffer.write(block)
        sys.stdout.buffer.flush()
        time.sleep(0.15)

"""Run one command and report its wall time, CPU seconds (user +
system) and peak RSS: ``spawn.py REPORT_FILE CMD...``.

Why a separate, stdlib-only process: Linux charges a child's ``ru_maxrss`` with the RSS of the
process that forked it (the pre-exec image), so a parent holding numpy and data would inflate every
child's peak. This spawner is a bare interpreter (~10 MB), far below anything it measures.
"""

import json
import os
import subprocess
import sys
import time

report, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
proc = subprocess.Popen(argv)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - t0
with open(report, "w") as f:
    json.dump(
        {
            "wall": wall,
            "cpu": usage.ru_utime + usage.ru_stime,
            "maxrss_kb": usage.ru_maxrss,
            "exit": os.waitstatus_to_exitcode(status),
        },
        f,
    )

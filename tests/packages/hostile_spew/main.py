"""Hostile test cryptlet: prints 100 MiB (to fill the host's log) and forges host log lines."""
import sys

import fabric_host


class Hostile:
    def spew(self, mib: int = 100) -> int:
        line = "spew " + "x" * 1018 + "\n"  # 1 KiB a line
        for _ in range(mib * 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
        return mib

    def forge(self, tag: str) -> str:
        forged = f"2026-01-01 00:00:00,000 INFO fabric: {tag} registered cryptlet trusted"
        print(f"ok\n{forged}\x1b[2K\r{forged}\x1b[0m", flush=True)
        fabric_host.log(f"progress\n{forged}\x1b[1A")
        return tag

"""Hostile test cryptlet: writes garbage to every socket it holds (the protocol stream)."""
import os
import stat


class Hostile:
    def run(self) -> dict:
        written = 0
        for fd in range(64):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.write(fd, b"\x00\xffnot a protocol message{\n")
                    written += 1
            except OSError:
                pass
        return {"written": written}

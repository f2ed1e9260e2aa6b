"""Hostile test cryptlet: asks for 4 GiB at once."""


class Hostile:
    def run(self) -> int:
        block = bytearray(4 << 30)
        return len(block)

"""Hostile test cryptlet: never returns."""


class Hostile:
    def run(self) -> None:
        while True:
            pass

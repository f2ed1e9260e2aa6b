"""Hostile test cryptlet: forks repeatedly."""
import os


class Hostile:
    def bomb(self) -> None:
        """The classic fork bomb: every process forks until the kernel refuses."""
        while True:
            os.fork()

    def spawn_and_return(self) -> dict:
        """Leave three children spinning on the CPU and return as if nothing happened."""
        for _ in range(3):
            if os.fork() == 0:
                while True:
                    pass
        return {"started": 3}

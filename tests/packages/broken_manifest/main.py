class Broken:
    def run(self):
        return 1

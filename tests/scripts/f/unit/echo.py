from __future__ import annotations

import time


def main(x: int, sleep: float = 0.0) -> dict:
    time.sleep(sleep)
    return {"x": x * 2}

def main() -> None:
    raise ValueError("boom")

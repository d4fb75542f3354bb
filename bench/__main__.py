"""Run every benchmark: ``python -m bench`` (or ``make bench``)."""

from bench import lease_and_writes

if __name__ == "__main__":
    print("== the database guard (lease_and_writes)")
    lease_and_writes.main()

.PHONY: up test bench
up:  ## bring the fleet up on this machine (embedded Postgres and Redis by default)
	scripts/up.sh

test:  ## install everything and run the test suite against real Postgres and Redis
	scripts/test.sh

bench:  ## run every benchmark under bench/
	scripts/venv.sh test,embedded && for b in bench/*.py; do .venv/bin/python $$b; done

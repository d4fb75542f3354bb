# The two commands of the README. Both install whatever is missing first (scripts/bootstrap).
.PHONY: dev test bench reset

dev:    ## run the app on the local stack (development only) until Ctrl-C
	scripts/dev

test:   ## run every check and test
	scripts/test

bench:  ## print the benchmarks' figures
	scripts/bootstrap && .venv/bin/python -m bench

reset:  ## wipe the local stack's state (database, secrets, logs)
	scripts/bootstrap && .venv/bin/signalguard reset

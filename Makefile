# The two commands of the README. Everything they need (venv, Kafka from Maven Central) is set up by them.
.PHONY: demo test

demo:  ## local Kafka + hub worker + ingest + connectors + coordinator web view
	bash scripts/bootstrap.sh
	.venv/bin/hub demo $(ARGS)

test:  ## the whole test suite (lint, types, pytest on a real broker); ARGS=--full for full sizes
	bash scripts/test.sh $(ARGS)

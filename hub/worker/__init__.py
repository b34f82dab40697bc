"""The routing worker: a faust App whose agency messages are processed a batch at a time, exactly once.

Reading order: :mod:`hub.worker.state` and :mod:`hub.worker.disk` (the partitioned, changelogged state, in
memory and on disk) → :mod:`hub.worker.batch`
(one batch's walk, no Kafka in it) → :mod:`hub.kafka.transactions` (consume, produce and commit a batch in
one Kafka transaction) → :mod:`hub.worker.app` (the faust App around it: lifecycle, web views) →
:mod:`hub.worker.processes` (``hub worker --processes N``).
"""

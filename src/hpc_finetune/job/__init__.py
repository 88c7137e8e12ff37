"""Compute-side code: what runs inside a job on the compute nodes, beside the training core (``train/``).

``launch`` (the node program submitit calls on every node), ``segments`` (how a job segment ended; the requeue and
retry policy), ``checkpoints`` (which checkpoints are complete), ``runner`` (the local runner: the process that
owns a chain of local jobs where no scheduler holds dependencies), ``stagejob`` (a chained stage's job: its command,
built when it runs), ``select`` (the select stage: a sweep's best member, into selection.json; the metric itself is
campaigns/ranking.py's, standard library only). Login-light: standard library only, no training library, no
registry, no CLI, no pre-flight checks (tests/test_layering.py).
"""

"""`make bench`: the predictor's throughput and latency against two baselines, in one run.

`python -m benchmarks.predictor` starts, one after another on free loopback ports, a
constant-answer Flask app under the predictor's own gunicorn settings (the
ceiling: what HTTP, gunicorn and Flask cost before any model work),
`mlflow models serve` on the same @champion, and the onebox predictor with
the prediction log on (writing to a temporary PostgreSQL database) and off,
then beside it a predictor of a number (a regressor on the same features,
taking turns with the binary one: a number is served within 10% of a
probability's speed).
Each is loaded with wrk, and the figures and their ratios are printed with
the targets they are held to.  Numbers are only compared within one run, on
one machine, under the same load.  Next to wrk's req/s and latency the bench
prints the CPU each server's processes spent per request: on a machine other
work shares, throughput moves with that work, CPU per request much less.
"""

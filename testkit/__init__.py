"""What the tests and the benchmarks share to drive real stacks from outside: the compose
and Swarm stacks as the tests build them (`stacks`) and steady traffic against a
predictor (`load`).  Outside what ships: not in the image, not installed as a package."""

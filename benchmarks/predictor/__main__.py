"""`python -m benchmarks.predictor` (`make bench`)."""

from benchmarks.predictor.run import main

raise SystemExit(main())

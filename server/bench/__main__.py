"""`python -m server.bench` (`make bench`)."""

from server.bench.run import main

raise SystemExit(main())

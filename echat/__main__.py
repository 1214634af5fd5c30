"""`python -m echat`: the same command line as `echat`."""

from echat.cli import main

raise SystemExit(main())

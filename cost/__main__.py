"""``python -m cost`` is ``python -m cost.run`` (see `cost.run`)."""

from .run import main

raise SystemExit(main())

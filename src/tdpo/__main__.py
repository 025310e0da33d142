from tdpo.cli import main

raise SystemExit(main())

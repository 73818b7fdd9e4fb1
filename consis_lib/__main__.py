from consis_lib.cli import main

raise SystemExit(main())

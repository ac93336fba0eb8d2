from xetool.cli.main import main

raise SystemExit(main())

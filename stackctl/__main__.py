from stackctl.cli.main import main

main()

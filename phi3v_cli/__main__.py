from phi3v_cli.app import main

main()

from litevlm.cli import main

main()

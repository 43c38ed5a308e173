from dnnkit.cli import main

main()

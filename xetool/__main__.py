from xetool.cli.main import program

program()

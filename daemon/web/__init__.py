"""The console: a local web app showing the schedule, the history and live previews of the templates.

`followthrough web` serves it alone; `run` serves it beside the daemon when the config has a [web] table.
"""

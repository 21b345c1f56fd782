"""The web console (`sandbox ui`): live orders, the saga graph with each order's path, its trace.

``app`` holds the routes and the event stream, ``live`` the one poller every page shares,
``graph`` draws the state machine from its ASL, ``details`` reads each state's input and output,
``forms`` checks the order form, ``server`` serves it all on 127.0.0.1. Importing this package
loads none of them: the CLI imports the console only when asked for it.
"""

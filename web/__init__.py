"""The web app for school staff: pages over the SQL record, actions as workflow Updates.

Importing the package registers its tables (accounts and sessions) with SQLModel, so that
`database.make_engine` creates them.
"""

import web.accounts  # noqa: F401  (registers the account tables)

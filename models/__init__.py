"""Tables and pure domain types. Importing the package registers every table."""

import models.letters  # noqa: F401  (registers the letter tables)

"""Sources: read the outside world (directories, SCIM clients, export files) into domain records.

No database here. The file source's readers are exported from this package:
:func:`read_csv` (users and groups CSV) and :func:`read_ldif` (an RFC 2849 LDIF export).
"""

from syncd.sources.csv_file import read_csv
from syncd.sources.ldif_file import read_ldif

__all__ = ["read_csv", "read_ldif"]

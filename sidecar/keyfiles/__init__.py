"""Key files on disk: the public keyset, one encrypted share per member, and each operator's identity key.

Every file is JSON with a ``format`` name and a ``version``; loaders are strict and every refusal is one
``KeyFileError`` (a ``ValueError``) line naming the file and the problem. Secrets are on disk only encrypted
NIP-49 style (nostr-sdk's ``EncryptedSecretKey``) in files created with mode 0600, and never appear in a
message or a repr. Passphrases come from a file, ``$SIDECAR_PASSPHRASE`` or a prompt, never the command line.

``documents`` reads and checks the JSON, ``formats`` holds the three file formats, ``storage`` the
passphrases and the all-or-nothing writes.
"""

from sidecar.keyfiles.documents import (
    FORMAT_VERSION,
    IDENTITY_FORMAT,
    KEYSET_FORMAT,
    MAX_MEMBERS,
    PUBLIC_MODE,
    SECRET_MODE,
    SHARE_FORMAT,
    SUITE_NAME,
    KeyFileError,
)
from sidecar.keyfiles.formats import (
    DEFAULT_KDF_LOG_N,
    MAX_KDF_LOG_N,
    MIN_KDF_LOG_N,
    IdentityFile,
    Keyset,
    ShareFile,
    check_kdf_log_n,
    encode_identity,
    encode_keyset,
    encode_share,
    load_identity,
    load_keyset,
    load_share,
    read_identity_file,
    read_key_file,
    read_share_file,
)
from sidecar.keyfiles.storage import PASSPHRASE_ENV, check_new_files, read_passphrase, write_files

__all__ = [
    "DEFAULT_KDF_LOG_N", "FORMAT_VERSION", "IDENTITY_FORMAT", "KEYSET_FORMAT", "MAX_KDF_LOG_N", "MAX_MEMBERS",
    "MIN_KDF_LOG_N", "PASSPHRASE_ENV", "PUBLIC_MODE", "SECRET_MODE", "SHARE_FORMAT", "SUITE_NAME",
    "IdentityFile", "KeyFileError", "Keyset", "ShareFile",
    "check_kdf_log_n", "check_new_files", "encode_identity", "encode_keyset", "encode_share", "load_identity",
    "load_keyset", "load_share", "read_identity_file", "read_key_file", "read_passphrase", "read_share_file",
    "write_files",
]

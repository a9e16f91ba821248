#!/usr/bin/env python3
"""Exports the protobuf descriptors clicktrail validates its Google Ads JSON
against, from the official `google-ads` package (PyPI, Apache-2.0).

The package ships proto-plus modules whose messages carry the compiled file
descriptors; this script collects the files needed by the roots below, with
their imports, into one `FileDescriptorSet` (binary protobuf). Nothing is
written by hand: every message, field and enum comes from Google's package.

Usage (see crates/destinations/proto/README.md for the pinned versions):

    python3 -m venv /tmp/gads-venv
    /tmp/gads-venv/bin/pip install google-ads==34.0.0
    /tmp/gads-venv/bin/python crates/destinations/tools/export_google_ads_descriptor.py \
        --api-version v26 --out crates/destinations/proto/google_ads_v26_conversion_upload.binpb
"""

import argparse
import importlib
import sys

from google.protobuf import descriptor_pb2

# (module under google.ads.googleads.<version>, message class) pairs whose
# files (and everything they import) go into the set.
ROOTS = [
    # What we send and what comes back.
    ("services.types.conversion_upload_service", "UploadClickConversionsRequest"),
    ("services.types.conversion_upload_service", "UploadClickConversionsResponse"),
    # The error codes our response classification names, so a test can check
    # that every code in its tables is a real enum value of this version.
    ("errors.types.conversion_upload_error", "ConversionUploadErrorEnum"),
    ("errors.types.authentication_error", "AuthenticationErrorEnum"),
    ("errors.types.authorization_error", "AuthorizationErrorEnum"),
    ("errors.types.quota_error", "QuotaErrorEnum"),
    ("errors.types.internal_error", "InternalErrorEnum"),
]


def collect(file_descriptor, seen, out):
    """Depth-first, dependencies before dependants, each file once.

    proto-plus registers a file's imports in no fixed order, so they are
    sorted by name here (none is public or weak, so no index refers to that
    order) to make the output byte-for-byte reproducible.
    """
    if file_descriptor.name in seen:
        return
    seen.add(file_descriptor.name)
    deps = sorted(file_descriptor.dependencies, key=lambda d: d.name)
    for dep in deps:
        collect(dep, seen, out)
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)
    if proto.public_dependency or proto.weak_dependency:
        raise SystemExit(f"{proto.name}: public/weak imports; ordering would break their indices")
    proto.dependency[:] = sorted(proto.dependency)
    out.append(proto)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-version", default="v26")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    seen, files = set(), []
    for module_name, message_name in ROOTS:
        module = importlib.import_module(f"google.ads.googleads.{args.api_version}.{module_name}")
        message = getattr(module, message_name)
        # proto-plus classes expose the underlying protobuf class via pb().
        collect(message.pb().DESCRIPTOR.file, seen, files)

    data = descriptor_pb2.FileDescriptorSet(file=files).SerializeToString(deterministic=True)
    with open(args.out, "wb") as f:
        f.write(data)
    for f in files:
        print(f.name, file=sys.stderr)
    print(f"{len(files)} files, {len(data)} bytes -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

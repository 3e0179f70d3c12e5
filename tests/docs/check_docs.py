"""The documentation against the plugins' own schemas, so neither drifts:

- docs/reference.md must be exactly what `nudge describe all --markdown`
  prints (scripts/gen-reference rewrites it);
- each plugin's README lists, in its `| key | ...` table, exactly the keys
  its schema declares — no key missing, none that does not exist.
"""
import difflib
import os
import re
import subprocess
import sys
import unittest

NUDGE = os.environ.get("NUDGE_BIN", "nudge")
SOURCE_DIR = os.environ.get("NUDGE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def describe(what):
    out = subprocess.run([NUDGE, "describe", what, "--markdown"], capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(f"nudge describe {what} failed:\n{out.stderr}")
    return out.stdout


def keys_in_key_tables(markdown):
    """First-column keys of every table whose header starts with `| key |`."""
    keys, in_table = [], False
    for line in markdown.splitlines():
        if re.match(r"^\|\s*key\s*\|", line, re.IGNORECASE):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        if in_table:
            m = ROW.match(line)
            if m:
                keys.append(m.group(1))
    return keys


class DocsMatchSchemas(unittest.TestCase):
    def test_reference_is_what_describe_prints(self):
        path = os.path.join(SOURCE_DIR, "docs", "reference.md")
        with open(path) as f:
            documented = f.read()
        generated = describe("all")
        if documented != generated:
            diff = "".join(difflib.unified_diff(documented.splitlines(True), generated.splitlines(True),
                                                "docs/reference.md", "nudge describe all --markdown"))
            self.fail("docs/reference.md is stale; run scripts/gen-reference\n" + diff)

    def test_each_plugin_readme_documents_exactly_its_schema(self):
        plugins_dir = os.path.join(SOURCE_DIR, "plugins")
        checked = 0
        for kind in sorted(os.listdir(plugins_dir)):
            kind_dir = os.path.join(plugins_dir, kind)
            if not os.path.isdir(kind_dir):
                continue
            for name in sorted(os.listdir(kind_dir)):
                readme = os.path.join(kind_dir, name, "README.md")
                if not os.path.exists(readme):
                    continue
                with self.subTest(plugin=f"{kind}.{name}"):
                    schema = keys_in_key_tables(describe(f"{kind}.{name}"))
                    with open(readme) as f:
                        documented = keys_in_key_tables(f.read())
                    missing = [k for k in schema if k not in documented]
                    unknown = [k for k in documented if k not in schema]
                    self.assertEqual((missing, unknown), ([], []),
                                     f"{os.path.relpath(readme, SOURCE_DIR)}: keys of the schema not documented "
                                     f"{missing}; documented keys the schema lacks {unknown}")
                    checked += 1
        self.assertGreaterEqual(checked, 8)
        print(f"{checked} plugin READMEs match their schemas")


if __name__ == "__main__":
    unittest.main(verbosity=2)

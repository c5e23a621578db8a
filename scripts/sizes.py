#!/usr/bin/env python3
"""Sizes above the model: `python3 scripts/sizes.py [DIR ...]` (default: model train eval report bench src).

Prints every function longer than 80 lines (from its `fn` line to its closing brace), every command
file (src/cmd, src/args) over 150 lines and every other file over 600 lines, each list largest first,
then the largest of each kind. Functions of integration tests (files under a `tests/` folder) are
left out of the function limit (a test reads top to bottom); their files still count. Exits 1 if
anything is over a limit.
"""
import os, re, sys

FN_LIMIT, CMD_LIMIT, FILE_LIMIT = 80, 150, 600

def blank_strings(text):
    """Comments, strings and char literals replaced by spaces (newlines kept), so braces count true."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = '"' + hashes
            j = text.find(end, i + 2 + len(hashes))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1])); i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0))); i += len(m.group(0))
            else:  # a lifetime
                out.append(c); i += 1
        else:
            out.append(c); i += 1
    return "".join(out)

def functions(path):
    text = blank_strings(open(path, encoding="utf-8").read())
    found = []
    for m in re.finditer(r"\bfn\s+(\w+)", text):
        open_at = text.find("{", m.end())
        semi = text.find(";", m.end())
        if open_at < 0 or (0 <= semi < open_at):
            continue  # a declaration without a body
        depth, j = 0, open_at
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        start = text.count("\n", 0, m.start()) + 1
        end = text.count("\n", 0, j) + 1
        found.append((end - start + 1, m.group(1), start))
    return found

def main(dirs):
    fns, cmds, files = [], [], []
    for d in dirs:
        for root, sub, names in os.walk(d):
            sub[:] = [s for s in sub if s != "target"]
            for f in names:
                if not f.endswith(".rs"):
                    continue
                p = os.path.normpath(os.path.join(root, f))
                lines = open(p, encoding="utf-8").read().count("\n")
                is_cmd = p.startswith(os.path.join("src", "cmd")) or p.startswith(os.path.join("src", "args"))
                (cmds if is_cmd else files).append((lines, p))
                if "tests" not in p.split(os.sep)[:-1]:
                    fns += [(n, f"{p}:{line} {name}") for n, name, line in functions(p)]
    over = 0
    for title, rows, limit in (("functions", fns, FN_LIMIT), ("command files", cmds, CMD_LIMIT),
                               ("files", files, FILE_LIMIT)):
        rows.sort(reverse=True)
        bad = [r for r in rows if r[0] > limit]
        over += len(bad)
        print(f"{title} over {limit} lines: {len(bad)}")
        for n, what in bad:
            print(f"    {n:5}  {what}")
        if rows:
            print(f"    largest: {rows[0][0]} lines, {rows[0][1]}")
    return 1 if over else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["model", "train", "eval", "report", "bench", "src"]))

"""proc_tree.py: the process ids below a process (children, grandchildren, ...), from
/proc, one line, space-separated. For tests that must signal one job's own processes
(a rank of an mpirun started by `saev`) and never anyone else's.

  /usr/bin/python3 tests/proc_tree.py PID
"""
import os
import sys


def descendants(root):
    kids = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        kids.setdefault(ppid, []).append(int(p))
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


if __name__ == "__main__":
    print(" ".join(map(str, descendants(int(sys.argv[1])))))

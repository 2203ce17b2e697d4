# CPython under the preload (run with PYTHONMALLOC=malloc so objects go
# through malloc rather than pymalloc's own mmap arenas): dicts, lists,
# strings and threads, then the mapping holding a live object, from smaps.
import threading

d = {f"key-{i}": [i] * (i % 20) for i in range(200_000)}
total = sum(len(v) for v in d.values())
words = " ".join(str(i) for i in range(100_000)).split()
results = []
def work(n):
    local = {j: str(j) * 3 for j in range(n)}
    results.append(len(local))
threads = [threading.Thread(target=work, args=(20_000 + t,)) for t in range(8)]
for t in threads: t.start()
for t in threads: t.join()

probe = ["probe"] * 1000
addr = id(probe)
flags, locked = "", ""
inside = False
with open("/proc/self/smaps") as f:
    for line in f:
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("VmFlags:"):
            flags = line.strip()
        elif inside and line.startswith("Locked:"):
            locked = line.strip()
print(f"entries={len(d)} total={total} words={len(words)} threads={sorted(results)}")
print(f"object_mapping {locked} | {flags}")

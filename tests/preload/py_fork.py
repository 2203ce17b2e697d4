# fork from a multithreaded CPython under the preload: four threads allocate
# flat out while the main thread forks 50 times; every child allocates,
# frees and exits 0 within a deadline.
import os, threading, time

stop = False
def churn(seed):
    keep = []
    i = seed
    while not stop:
        keep.append({i: str(i) * (i % 50)})
        if len(keep) > 500:
            del keep[:250]
        i += 1
threads = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
for t in threads: t.start()
ok = 0
for n in range(50):
    pid = os.fork()
    if pid == 0:
        d = {i: [i] * 10 for i in range(20000)}
        os._exit(0 if len(d) == 20000 else 3)
    deadline = time.time() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = -1
            break
        time.sleep(0.001)
    ok += status == 0
stop = True
for t in threads: t.join()
print(f"forks_ok={ok}")

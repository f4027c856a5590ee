"""bench/model_load.py — one model load, timed, for bench/model_load.sh.

  model_load.py MODE FILE NAME [HISTORY]

MODE: file  glintru_load_model_file(name, path)
      prbf  glintru_load_model(name, pg_read_binary_file(path))
      bin   glintru_load_model(name, $2) with the bytes as a binary parameter (psycopg 3)
      text  the same through psycopg2, which sends bytea as an escaped literal
Prints one line: RESULT mode=M secs=S hwm_mb=H first_ms=F second_ms=G, where
hwm_mb is the loading backend's VmHWM (peak RSS, shared pages it touched
included) and first/second are the first two glintru_recommend_history calls
in a new connection after the load committed.  Connection from PG* variables.
"""
import sys
import time


def connect(mode):
    """A connection of the driver the mode uses, in autocommit."""
    if mode in ("bin",):
        import psycopg
        return psycopg.connect("", autocommit=True)
    import psycopg2
    c = psycopg2.connect("")
    c.autocommit = True
    return c


def hwm_mb(pid):
    """VmHWM of a backend, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    mode, path, name = sys.argv[1], sys.argv[2], sys.argv[3]
    hist = sys.argv[4] if len(sys.argv) > 4 else "{1,2,3}"
    conn = connect(mode)
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    data = open(path, "rb").read() if mode in ("bin", "text") else None
    t0 = time.time()
    if mode == "file":
        cur.execute("SELECT glintru_load_model_file(%s, %s, true)", (name, path))
    elif mode == "prbf":
        cur.execute("SELECT glintru_load_model(%s, pg_read_binary_file(%s), true)", (name, path))
    elif mode == "bin":
        cur.execute("SELECT glintru_load_model(%s, %b, true)", (name, data), binary=True)
    else:
        import psycopg2
        cur.execute("SELECT glintru_load_model(%s, %s, true)", (name, psycopg2.Binary(data)))
    secs = time.time() - t0
    hwm = hwm_mb(pid)
    conn.close()
    import psycopg2
    c2 = psycopg2.connect("")
    c2.autocommit = True
    cur2 = c2.cursor()
    cur2.execute("SELECT 1")
    calls = []
    for _ in range(2):
        t = time.time()
        cur2.execute("SELECT count(*) FROM glintru_recommend_history(%s, %s::bigint[], 10)", (name, hist))
        cur2.fetchall()
        calls.append((time.time() - t) * 1000)
    c2.close()
    print(f"RESULT mode={mode} secs={secs:.2f} hwm_mb={hwm:.0f} first_ms={calls[0]:.1f} second_ms={calls[1]:.1f}")


if __name__ == "__main__":
    main()

# docs/examples/app.py — glintru from a Python application (psycopg2): recommend
# for a user, record a click, recommend again.  The README shows this file
# verbatim and test/app_python.sh runs it against the Quick start's tables.
# libpq takes the connection from PGHOST, PGPORT, PGUSER and PGDATABASE.
import psycopg2


def recommend(cur, user_id, k=5):
    cur.execute("SELECT item_id, score FROM glintru_recommend(%s, %s)", (user_id, k))
    return cur.fetchall()  # [(item_id, score), ...], best first


conn = psycopg2.connect("")
with conn, conn.cursor() as cur:  # one transaction, committed at the end of the block
    print("before:", " ".join(str(item) for item, _ in recommend(cur, 1)))
    cur.execute("INSERT INTO events (user_id, item_id) VALUES (%s, %s)", (1, 169))
    # the trigger has already updated user 1's state, inside this transaction
    print("after: ", " ".join(str(item) for item, _ in recommend(cur, 1)))
conn.close()

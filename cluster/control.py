"""``python -m cluster up|down|status|fs``: the local test cluster (HDFS + Spark standalone).

Five JVMs, every address on 127.0.0.1: a NameNode and a DataNode from the Hadoop jars that
cluster/pom.xml fetches once into cluster/cache, a Spark standalone master and two 1-core workers
via ``spark-class`` from the pyspark install. ``up`` is idempotent: it starts what is missing and
waits until HDFS has left safe mode with its DataNode and both workers are registered. Layout,
ports and generated config: cluster/layout.py; docs/cluster.md tells how to use it.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cluster import layout as L
from cluster import procs

TIMEOUT = float(os.environ.get("WASURE_CLUSTER_TIMEOUT", "180"))
POM = L.REPO_ROOT / "cluster" / "pom.xml"
NAMENODE = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DATANODE = "org.apache.hadoop.hdfs.server.datanode.DataNode"
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


class ClusterError(RuntimeError):
    """The cluster cannot be started or used; the message names the component, port or log."""


@dataclass(frozen=True)
class Component:
    name: str
    main_class: str
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[str, ...] = ()


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise ClusterError("no `java` on PATH (nor in $JAVA_HOME/bin): install a Java 17 JDK")
    return java


def _spark_home() -> Path:
    try:
        import pyspark
    except ImportError as exc:
        raise ClusterError("pyspark is not importable: run `make setup` and use .venv/bin/python") from exc
    return Path(pyspark.__file__).resolve().parent


def ensure_hadoop_jars() -> Path:
    """cluster/cache, filled once by Maven (again only when cluster/pom.xml changes)."""
    cache = L.jar_cache()
    stamp = cache / ".done"
    if stamp.exists() and stamp.stat().st_mtime >= POM.stat().st_mtime:
        return cache
    mvn = shutil.which("mvn")
    if not mvn:
        raise ClusterError(f"the Hadoop jars are not in {cache} and there is no `mvn` to fetch them: install Maven")
    shutil.rmtree(cache, ignore_errors=True)
    print(f"cluster: fetching Hadoop {L.HADOOP_VERSION} server jars into {cache} (once)", flush=True)
    done = subprocess.run([mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                           f"-Dhadoop.version={L.HADOOP_VERSION}", "-DincludeScope=runtime",
                           f"-DoutputDirectory={cache}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise ClusterError(f"Maven could not fetch the Hadoop jars ({POM}):\n{(done.stdout + done.stderr)[-2000:]}")
    stamp.touch()
    return cache


def _hadoop_command(lay: L.Layout, java: str, main_class: str, heap: str, *args: str,
                    log4j: str = "log4j.properties") -> list[str]:
    return [java, f"-Xmx{heap}", procs.marker(lay.root), f"-Dlog4j.configuration=file:{lay.conf / log4j}",
            "-cp", f"{lay.conf}:{L.jar_cache()}/*", main_class, *args]


def components(lay: L.Layout, p: dict[str, int]) -> list[Component]:
    java, spark_home = _java(), _spark_home()
    spark_env = {"SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": L.HOST, "SPARK_DAEMON_MEMORY": "512m",
                 "SPARK_DAEMON_JAVA_OPTS": procs.marker(lay.root),
                 # Python apps cannot use standalone cluster deploy mode: no REST submission port
                 "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
    spark_class = str(spark_home / "bin" / "spark-class")
    master = L.spark_master_uri(p)
    found = [
        Component("namenode", NAMENODE, _hadoop_command(lay, java, NAMENODE, "512m"),
                  ports=("namenode_rpc", "namenode_http")),
        Component("datanode", DATANODE, _hadoop_command(lay, java, DATANODE, "512m"),
                  ports=("datanode_data", "datanode_ipc", "datanode_http")),
        Component("spark-master", MASTER, [spark_class, MASTER, "--host", L.HOST, "--port", str(p["spark_master"]),
                                           "--webui-port", str(p["spark_master_ui"])],
                  spark_env, ("spark_master", "spark_master_ui")),
    ]
    for n in range(1, L.WORKERS + 1):
        found.append(Component(
            f"spark-worker-{n}", WORKER,
            [spark_class, WORKER, "--host", L.HOST, "--cores", "1", "--memory", "4g",
             "--webui-port", str(p[f"spark_worker{n}_ui"]), "--work-dir", str(lay.work / f"worker-{n}"), master],
            spark_env, (f"spark_worker{n}_ui",)))
    return found


def _pid_file(lay: L.Layout, name: str) -> Path:
    return lay.pids / f"{name}.pid"


def running_pid(lay: L.Layout, comp: Component) -> int | None:
    pid = procs.read_pid(_pid_file(lay, comp.name))
    return pid if pid and procs.alive(pid) and procs.is_ours(pid, lay.root, comp.main_class) else None


def _http_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            return json.load(answer)
    except (OSError, ValueError):
        return None


def hdfs_state(p: dict[str, int]) -> dict | None:
    """NameNode JMX: live DataNodes and the safe-mode text ('' once writable); None if unreachable."""
    beans = _http_json(f"http://{L.HOST}:{p['namenode_http']}/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState")
    info = _http_json(f"http://{L.HOST}:{p['namenode_http']}/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo")
    if not beans or not info or not beans.get("beans") or not info.get("beans"):
        return None
    return {"live_datanodes": beans["beans"][0].get("NumLiveDataNodes", 0),
            "safemode": info["beans"][0].get("Safemode", "?")}


def spark_state(p: dict[str, int]) -> dict | None:
    """The master's /json: its status and the workers it sees ALIVE; None if unreachable."""
    state = _http_json(f"http://{L.HOST}:{p['spark_master_ui']}/json/")
    if not state:
        return None
    workers = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
    return {"status": state.get("status"), "alive_workers": len(workers),
            "worker_uis": sorted(w.get("webuiaddress", "") for w in workers)}


def hdfs_ready(p) -> bool:
    state = hdfs_state(p)
    return bool(state) and state["live_datanodes"] >= 1 and state["safemode"] == ""


def spark_ready(p) -> bool:
    state = spark_state(p)
    return bool(state) and state["status"] == "ALIVE" and state["alive_workers"] >= L.WORKERS


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(lay: L.Layout, comp: Component) -> int:
    log = lay.logs / f"{comp.name}.log"
    with open(log, "ab") as out:
        child = subprocess.Popen(comp.command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 cwd=lay.root, env={**os.environ, **comp.env}, start_new_session=True)
    _pid_file(lay, comp.name).write_text(f"{child.pid}\n")
    print(f"cluster: started {comp.name} (pid {child.pid}, log {log})", flush=True)
    return child.pid


def _wait(what: str, ready, watched: dict[str, int], lay: L.Layout) -> None:
    """Poll ``ready()`` until TIMEOUT; fail at once, with its log, if a watched process dies."""
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        for name, pid in watched.items():
            if not procs.alive(pid):
                log = lay.logs / f"{name}.log"
                raise ClusterError(f"{name} exited while waiting for {what}; last lines of {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            logs = ", ".join(str(lay.logs / f"{name}.log") for name in watched)
            raise ClusterError(f"timed out after {TIMEOUT:.0f} s waiting for {what}; see {logs}")
        time.sleep(0.5)


def _format_namenode(lay: L.Layout) -> None:
    log = lay.logs / "namenode-format.log"
    with open(log, "wb") as out:
        done = subprocess.run(_hadoop_command(lay, _java(), NAMENODE, "256m", "-format", "-nonInteractive", "-force"),
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=lay.root)
    if done.returncode != 0 or not lay.formatted:
        raise ClusterError(f"formatting the NameNode in {lay.name_dir} failed; last lines of {log}:\n{_tail(log)}")


@contextmanager
def _locked(lay: L.Layout):
    """One `up`/`down` at a time per run dir (two shells, or make -j)."""
    lay.root.mkdir(parents=True, exist_ok=True)
    with open(lay.root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _check_ports(comps: list[Component], p: dict[str, int]) -> None:
    for comp in comps:
        for port_name in comp.ports:
            holder = procs.port_holder(L.HOST, p[port_name])
            if holder:
                raise ClusterError(
                    f"{L.HOST}:{p[port_name]} ({port_name}, needed by {comp.name}) is already in use by {holder}; "
                    f"stop it or choose another port with WASURE_CLUSTER_{port_name.upper()}_PORT")


def up(lay: L.Layout) -> None:
    began = time.monotonic()
    p = L.ports()
    ensure_hadoop_jars()
    comps = components(lay, p)
    running = {c.name: pid for c in comps if (pid := running_pid(lay, c))}
    _check_ports([c for c in comps if c.name not in running], p)   # before anything is written
    if not running:
        # a fresh cluster: last run's data, executor dirs and logs go
        for old in (lay.data, lay.work, lay.logs, lay.pids):
            shutil.rmtree(old, ignore_errors=True)
    for directory in (lay.logs, lay.pids, lay.work, lay.data):
        directory.mkdir(parents=True, exist_ok=True)
    L.write_hadoop_conf(lay, p)
    started: dict[str, int] = {}
    by_name = {c.name: c for c in comps}

    def ensure(name: str) -> None:
        if name not in running:
            started[name] = _start(lay, by_name[name])

    def watched(*names: str) -> dict[str, int]:
        return {n: running.get(n) or started[n] for n in names}

    try:
        if "namenode" not in running and not lay.formatted:
            _format_namenode(lay)
        ensure("namenode")
        ensure("spark-master")
        _wait("the NameNode's web port", lambda: hdfs_state(p) is not None, watched("namenode"), lay)
        ensure("datanode")
        _wait("the Spark master", lambda: (spark_state(p) or {}).get("status") == "ALIVE", watched("spark-master"), lay)
        for n in range(1, L.WORKERS + 1):
            ensure(f"spark-worker-{n}")
        _wait("HDFS to register its DataNode and leave safe mode", lambda: hdfs_ready(p),
              watched("namenode", "datanode"), lay)
        _wait(f"{L.WORKERS} Spark workers to register", lambda: spark_ready(p),
              watched("spark-master", *(f"spark-worker-{n}" for n in range(1, L.WORKERS + 1))), lay)
    except BaseException:
        # leave nothing half-started behind (it holds ports and memory)
        procs.stop(list(started.values()), grace_seconds=10)
        for name in started:
            _pid_file(lay, name).unlink(missing_ok=True)
        raise
    env = L.write_client_files(lay, p)
    took = f"up in {time.monotonic() - began:.0f} s" if started else "already up"
    print(f"cluster: {took}; URIs in {lay.env_file}:")
    for key, value in env.items():
        print(f"  {key}={value}")


def down(lay: L.Layout) -> None:
    pids = {}
    if lay.pids.is_dir():
        for comp in components(lay, L.ports()):
            pid = running_pid(lay, comp)
            if pid:
                pids[comp.name] = pid
    killed = procs.stop(list(pids.values()))
    for name, pid in pids.items():
        print(f"cluster: stopped {name} (pid {pid}{', killed' if pid in killed else ''})")
    if not pids:
        print("cluster: nothing was running")
    for gone in (lay.pids, lay.data):
        shutil.rmtree(gone, ignore_errors=True)
    for gone in (lay.env_file, lay.spark_conf):
        gone.unlink(missing_ok=True)
    print(f"cluster: removed HDFS data; logs stay in {lay.logs} and executor dirs in {lay.work} until the next up")


def status(lay: L.Layout) -> dict:
    p = L.ports()
    report = {"components": {}, "env": L.read_env(lay) if lay.env_file.exists() else None}
    for comp in components(lay, p):
        pid = running_pid(lay, comp)
        tree = [pid, *procs.children(pid)] if pid else []
        listening = sorted({a for addresses in procs.listening(tree).values() for a in addresses})
        report["components"][comp.name] = {"pid": pid, "listening": listening}
    pids = {name: c["pid"] for name, c in report["components"].items()}
    # asked only of our own daemons: another program on these ports says nothing about this cluster
    report["hdfs"] = hdfs_state(p) if pids["namenode"] else None
    report["spark"] = spark_state(p) if pids["spark-master"] else None
    report["ready"] = all(pids.values()) and hdfs_ready(p) and spark_ready(p)
    return report


def _print_status(report: dict) -> None:
    for name, comp in report["components"].items():
        state = f"running (pid {comp['pid']})" if comp["pid"] else "stopped"
        print(f"{name:15} {state:22} {' '.join(comp['listening'])}")
    print(f"hdfs:  {report['hdfs'] or 'unreachable'}")
    print(f"spark: {report['spark'] or 'unreachable'}")
    print("ready" if report["ready"] else "not ready")


def fs(lay: L.Layout, args: list[str]) -> int:
    """`hadoop fs ARGS` against the cluster (FsShell from cluster/cache, the generated conf)."""
    namenode = next(c for c in components(lay, L.ports()) if c.name == "namenode")
    if not running_pid(lay, namenode) or not (lay.conf / "core-site.xml").exists():
        raise ClusterError(f"the cluster of {lay.root} is not up: run `make cluster-up` first")
    command = _hadoop_command(lay, _java(), "org.apache.hadoop.fs.FsShell", "256m", *args,
                              log4j="log4j-client.properties")
    return subprocess.run(command).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start what is not running and wait until it is ready")
    sub.add_parser("down", help="stop everything, remove HDFS data")
    st = sub.add_parser("status", help="what runs, where it listens; exit 0 only if ready")
    st.add_argument("--json", action="store_true")
    st.add_argument("--quiet", action="store_true")
    sub.add_parser("fs", help="hadoop fs ARGS on the cluster, e.g. fs -ls -R /")
    argv = sys.argv[1:] if argv is None else argv
    lay = L.Layout.default()
    try:
        if argv[:1] == ["fs"]:       # everything after `fs` belongs to FsShell, not to argparse
            return fs(lay, argv[1:])
        args = parser.parse_args(argv)
        if args.command == "status":
            report = status(lay)
            if args.json:
                print(json.dumps(report, indent=2))
            elif not args.quiet:
                _print_status(report)
            return 0 if report["ready"] else 1
        with _locked(lay):
            up(lay) if args.command == "up" else down(lay)
        return 0
    except (ClusterError, ValueError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1

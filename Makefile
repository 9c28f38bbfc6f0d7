# wasure: two commands on a fresh machine with Python 3.11, a Java 17 JDK and Maven.
#   make demo   - set everything up, build a small lake under ./lake, run every pipeline step
#   make test   - set everything up, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DELTA_VERSION ?= 4.4.0
JARS   := jars/cache

.PHONY: setup jars demo test bench bench-full bench-cluster clean schema cluster-up cluster-down test-cluster test-browser

$(BIN)/wasure: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q -e '.[dev,airflow]'
	touch $(BIN)/wasure

# Delta Lake's jars, fetched once from Maven Central; every later Spark start is offline.
# Spark itself already ships Hadoop, Parquet, Jackson, Scala: only io.delta artifacts are copied.
$(JARS)/.done: jars/pom.xml
	mvn -q -B -f jars/pom.xml dependency:copy-dependencies -Ddelta.version=$(DELTA_VERSION) \
	    -DincludeScope=runtime -DincludeGroupIds=io.delta -DoutputDirectory=cache
	touch $@

# wasure's own JVM classes, compiled against pyspark's jars: the UDFs (the JVM twin of the Python HMAC
# pseudonym, value sets, deletion vectors, backup keys) and the local file system (wasure.fs).
UDF_SOURCES := $(wildcard jars/udf/wasure/udf/*.java jars/udf/wasure/fs/*.java)
$(JARS)/wasure-udf.jar: $(UDF_SOURCES) $(BIN)/wasure
	rm -rf jars/build && mkdir -p jars/build $(JARS)
	javac --release 17 -cp "$$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/jars/*" \
	    -d jars/build $(UDF_SOURCES)
	jar cf $@ -C jars/build wasure
	rm -rf jars/build

# The classes a Spark JVM loads, recorded once (JDK AppCDS): every later JVM maps them instead of
# loading and verifying thousands of classes from the jars (jobs/runtime/class_archive.py; ~75 s).
$(JARS)/wasure-classes.jsa: $(JARS)/.done $(JARS)/wasure-udf.jar
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m jobs.runtime.class_archive $@

jars: $(JARS)/.done $(JARS)/wasure-udf.jar $(JARS)/wasure-classes.jsa
setup: $(BIN)/wasure jars

demo: setup
	$(BIN)/wasure demo

test: setup
	$(BIN)/python -m pytest -q tests --ignore=tests/cluster --ignore=tests/browser

schema: setup
	$(BIN)/wasure validate-policy --write-schema policies/policy.schema.json

bench: setup
	$(BIN)/pip install -q --no-deps 'anjana==1.2.3' 'beartype==0.22.2' && $(BIN)/python -m bench.run --size small

bench-full: setup
	$(BIN)/pip install -q --no-deps 'anjana==1.2.3' 'beartype==0.22.2' && $(BIN)/python -m bench.run --size full

# k-anonymity and erasure at 10M rows on the local cluster beside local[2] (bench/cluster_vs_local.py).
bench-cluster: setup
	$(BIN)/python -m bench.run --size cluster

# The local test cluster (docs/cluster.md): HDFS NameNode + DataNode and a Spark standalone master with
# two workers, all on 127.0.0.1. The Hadoop jars are fetched once with Maven (cluster/pom.xml).
CLUSTER := $(BIN)/python -m cluster

cluster-up: setup
	$(CLUSTER) up

cluster-down:
	$(CLUSTER) down

# Runs tests/cluster on the cluster; stops it afterwards unless it was already up before.
test-cluster: setup
	@if $(CLUSTER) status --quiet; then was_up=1; else was_up=0; $(CLUSTER) up || exit 1; fi; \
	$(BIN)/python -m pytest -q tests/cluster --ignore=tests/cluster/test_cluster_pipeline.py \
	  && $(BIN)/python -m pytest -q tests/cluster/test_cluster_pipeline.py; rc=$$?; \
	if [ $$was_up = 0 ]; then $(CLUSTER) down; fi; exit $$rc

# The Airflow trigger form in a real browser (tests/browser, docs/airflow.md). Needs Debian's chromium
# (as root: apt-get install -y chromium fonts-ipafont-gothic); Playwright never downloads a browser.
test-browser: setup
	$(BIN)/pip install -q -e '.[browser]'
	SPARK_LOCAL_IP=127.0.0.1 $(BIN)/python -m pytest -q tests/browser

clean:
	rm -rf lake spark-warehouse metastore_db derby.log .pytest_cache

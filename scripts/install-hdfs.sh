#!/usr/bin/env bash
# Installs the HDFS the back-to-source tests run against (issue 23): Apache Hadoop's
# MiniDFSCluster (org.apache.hadoop:hadoop-client-minicluster from Maven Central, at a pinned
# version) with its runtime jars, and scripts/hdfs/MiniHdfs.java compiled against them: a
# namenode and a datanode on 127.0.0.1 with WebHDFS on (test/helpers/hdfs.ts starts it).
# Cached outside the clone under $DAMSELFLY_CACHE/hdfs-<version>; the launcher's source hash is
# recorded, so a changed launcher is compiled anew while the jars stay. Needs Debian's maven and
# a JDK (javac). Idempotent. Prints the install directory on its last line.
set -euo pipefail
version="${HADOOP_MINICLUSTER_VERSION:-3.4.2}"
cache="${DAMSELFLY_CACHE:-/var/cache/damselfly}"
dir="$cache/hdfs-$version"
here="$(cd "$(dirname "$0")" && pwd)/hdfs"
src="$here/MiniHdfs.java"
for tool in mvn javac java; do
  command -v "$tool" >/dev/null || { echo "install-hdfs: $tool is required (Debian: maven, default-jdk-headless)" >&2; exit 1; }
done
mkdir -p "$cache"
# What lib/ holds: other dependencies are resolved anew.
deps="hadoop-client-minicluster:$version jaxb-api:2.3.1 slf4j-simple:1.7.36"

# The jars: resolved by Maven into a repository of their own (removed afterwards: only the
# runtime jars are kept), copied into a temporary directory and moved in whole, so an
# interrupted run never leaves a partial lib/ under the cached name.
if [ "$(cat "$dir/lib/.complete" 2>/dev/null)" != "$deps" ]; then
  rm -rf "$cache/.hdfs-$version."*  # what an interrupted run left
  tmp=$(mktemp -d "$cache/.hdfs-$version.XXXXXX")
  cat >"$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.damselfly.test</groupId>
  <artifactId>minihdfs</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.hadoop</groupId>
      <artifactId>hadoop-client-minicluster</artifactId>
      <version>$version</version>
    </dependency>
    <!-- Java 11 dropped JAXB from the JDK; the namenode's WebHDFS (Jersey 1) fails every
         request without it (500, then 404). -->
    <dependency>
      <groupId>javax.xml.bind</groupId>
      <artifactId>jaxb-api</artifactId>
      <version>2.3.1</version>
    </dependency>
    <!-- The cluster's log (warnings and errors on stderr) for a failing test to show. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-simple</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
POM
  (cd "$tmp" && mvn -B -q -Dmaven.repo.local="$tmp/m2" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/lib") >&2
  echo "$deps" >"$tmp/lib/.complete"
  rm -rf "$dir/lib"
  mkdir -p "$dir"
  mv "$tmp/lib" "$dir/lib"
  rm -rf "$tmp"
fi

hash=$(sha256sum "$src" | cut -d' ' -f1)
if [ "$(cat "$dir/classes/.source" 2>/dev/null)" != "$hash" ]; then
  rm -rf "$dir/.classes."*
  ctmp=$(mktemp -d "$dir/.classes.XXXXXX")
  javac -nowarn -d "$ctmp" -cp "$dir/lib/*" "$src" >&2
  echo "$hash" >"$ctmp/.source"
  rm -rf "$dir/classes"
  mv "$ctmp" "$dir/classes"
fi
echo "$dir"

// A MiniDFSCluster (one namenode, one datanode) for the HDFS back-to-source tests (issue 23),
// started by test/helpers/hdfs.ts. Every server binds 127.0.0.1 (namenode RPC and HTTP, the
// datanode's data transfer, HTTP and IPC), WebHDFS on. Ports are chosen by the kernel and
// printed as one JSON line once the cluster is up; it stays up until stdin closes (the test
// process went away) or SIGTERM, and then shuts the cluster down.
//
// Usage: java -cp <classes>:<lib>/* MiniHdfs <base dir>
import java.io.File;
import java.io.InputStream;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.server.datanode.DataNode;

public final class MiniHdfs {
  public static void main(String[] args) throws Exception {
    if (args.length != 1) {
      System.err.println("usage: MiniHdfs <base dir>");
      System.exit(2);
    }
    Configuration conf = new HdfsConfiguration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, new File(args[0]).getAbsolutePath());
    conf.setBoolean("dfs.webhdfs.enabled", true);
    conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.http-bind-host", "127.0.0.1");
    conf.set("dfs.namenode.http-address", "127.0.0.1:0");
    conf.set("dfs.namenode.https-address", "127.0.0.1:0");
    conf.set("dfs.namenode.secondary.http-address", "127.0.0.1:0");
    conf.set("dfs.datanode.address", "127.0.0.1:0");
    conf.set("dfs.datanode.http.address", "127.0.0.1:0");
    conf.set("dfs.datanode.https.address", "127.0.0.1:0");
    conf.set("dfs.datanode.ipc.address", "127.0.0.1:0");
    // The name the namenode puts in WebHDFS redirects to the datanode.
    conf.set("dfs.datanode.hostname", "127.0.0.1");
    conf.setInt("dfs.replication", 1);
    // Listings come in pages of 2 (LISTSTATUS_BATCH), so the tests' small directories page too.
    conf.setInt("dfs.ls.limit", 2);
    // No background block scanning: it only costs the shared test machine disk reads.
    conf.setLong("dfs.block.scanner.volume.bytes.per.second", 0);
    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
        .numDataNodes(1)
        .nameNodePort(0)
        .nameNodeHttpPort(0)
        .checkDataNodeAddrConfig(true)
        .format(true)
        .build();
    cluster.waitActive();
    Runtime.getRuntime().addShutdownHook(new Thread(cluster::shutdown));
    DataNode dn = cluster.getDataNodes().get(0);
    System.out.println("{\"ready\":true"
        + ",\"namenodeRpcPort\":" + cluster.getNameNodePort()
        + ",\"namenodeHttpPort\":" + cluster.getNameNode().getHttpAddress().getPort()
        + ",\"datanodeHttpPort\":" + dn.getInfoPort()
        + ",\"datanodeXferPort\":" + dn.getXferPort()
        + ",\"datanodeIpcPort\":" + dn.getIpcPort()
        + "}");
    System.out.flush();
    InputStream in = System.in;
    byte[] buf = new byte[256];
    while (in.read(buf) >= 0) {
      // Nothing to read: stdin is held open by the parent until it wants the cluster gone.
    }
    System.exit(0);
  }
}

# mclust's log-likelihood and BIC for every family and K = 1..9, with its defaults,
# for benchmarks/bench_families.py: that script's --export-data DIR writes the data
# sets as CSV (17 digits), and this prints the table it compares against:
#
#   python benchmarks/bench_families.py --export-data /tmp/mc --skip-quality --skip-speed
#   Rscript benchmarks/mclust_values.R /tmp/mc > benchmarks/mclust_6.0.0.csv
#
# (R 4.2.2 and mclust 6.0.0 from Debian 12: apt-get install r-cran-mclust.)
# BIC is written as jaxgmm writes it, -2 log L + p log n (mclust prints the negative);
# NA where mclust found no fit (a singular covariance).
suppressMessages(library(mclust))
dir <- commandArgs(trailingOnly = TRUE)[1]
cat(sprintf("# mclust %s, R %s: mclustLoglik(mclustBIC(X)) and -mclustBIC(X), defaults\n",
            packageVersion("mclust"), getRversion()))
cat("data,family,K,log_likelihood,bic\n")
for (name in c("wine", "iris", "seed blobs")) {
  X <- as.matrix(read.csv(file.path(dir, paste0(gsub(" ", "_", name), ".csv")), header = FALSE))
  b <- mclustBIC(X)
  ll <- mclustLoglik(b)
  for (family in colnames(b)) {
    for (k in rownames(b)) {
      cat(sprintf("%s,%s,%s,%.6f,%.6f\n", name, family, k, ll[k, family], -b[k, family]))
    }
  }
}

// Cross-check of the byte-level BPE tokenizer against JS reference tokenizers (see README.md).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include "model/tokenizer/tokenizer.h"
using namespace tabfit;
static std::string unhex(const std::string& s){ std::string o; for(size_t i=0;i+1<s.size();i+=2) o+=char(std::stoi(s.substr(i,2),nullptr,16)); return o;}
// Usage: crosscheck <pre> <prefix> <special_from_id>   (files <prefix>vocab.hex, <prefix>merges.hex, <prefix>cases.txt)
int main(int argc, char** argv){
  if (argc < 4) { std::cerr << "usage: crosscheck <pre> <file prefix> <first control id>\n"; return 2; }
  const std::string prefix = argv[2]; const size_t first_special = std::stoul(argv[3]);
  Vocab v; v.model="gpt2"; v.pre=argv[1]; v.add_space_prefix=false;
  std::ifstream fv(prefix + "vocab.hex"); std::string line;
  while(std::getline(fv,line)) v.tokens.push_back(unhex(line));
  for(size_t i=0;i<v.tokens.size();++i) v.types.push_back(i>=first_special?3:1);
  std::ifstream fm(prefix + "merges.hex");
  while(std::getline(fm,line)){ auto sp=line.find(' '); v.merges.push_back(unhex(line.substr(0,sp))+" "+unhex(line.substr(sp+1))); }
  auto t0=std::chrono::steady_clock::now();
  auto tok=Tokenizer::FromVocab(std::move(v));
  auto t1=std::chrono::steady_clock::now();
  if(!tok.ok()){ std::cerr<<tok.status().ToString()<<"\n"; return 1; }
  printf("load %.1f ms, %zu bytes\n", std::chrono::duration<double,std::milli>(t1-t0).count(), tok->MemoryBytes());
  std::ifstream fc(prefix + "cases.txt"); int n=0,bad=0; double ms=0; size_t bytes=0;
  while(std::getline(fc,line)){
    auto tab=line.find('\t'); std::string text=unhex(line.substr(0,tab));
    std::vector<int32_t> exp; std::istringstream ss(line.substr(tab+1)); int32_t id; while(ss>>id) exp.push_back(id);
    auto a=std::chrono::steady_clock::now();
    auto got=tok->Encode(text,false);
    ms+=std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-a).count(); bytes+=text.size();
    ++n;
    if(got!=exp){ ++bad; if(bad<=5){ printf("MISMATCH case %d (%zu bytes): got %zu ids, exp %zu\n", n, text.size(), got.size(), exp.size());
      size_t k=0; while(k<got.size()&&k<exp.size()&&got[k]==exp[k]) ++k;
      printf("  first diff at %zu: got", k); for(size_t j=k;j<k+6&&j<got.size();++j) printf(" %d'%s'",got[j],tok->TokenToPiece(got[j]).c_str());
      printf(" | exp"); for(size_t j=k;j<k+6&&j<exp.size();++j) printf(" %d'%s'",exp[j],tok->TokenToPiece(exp[j]).c_str()); printf("\n"); } }
    if(tok->Decode(got)!=text) printf("roundtrip fail case %d\n", n);
  }
  printf("%d cases, %d mismatches; encode %.1f ms for %zu bytes\n", n, bad, ms, bytes);
  { // WHOLE
    std::ifstream f("/work/shared/models/eval/wikitext2_test.txt"); std::stringstream ss; ss << f.rdbuf(); std::string t = ss.str();
    auto a=std::chrono::steady_clock::now(); auto ids=tok->Encode(t,false);
    printf("wikitext %zu bytes -> %zu ids in %.1f ms, roundtrip %d\n", t.size(), ids.size(), std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-a).count(), int(tok->Decode(ids)==t));
  }
}
